"""Fire detection: alarm sound, heat and CO2 detectors fused into NORMAL / PRE_ALARM / ALARM / FAULT."""
