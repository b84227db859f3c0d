"""The room's learned thermal model (grey-box RC, identified online) and the outdoor forecast it runs on."""
