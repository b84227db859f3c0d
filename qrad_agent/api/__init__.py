"""The local API: JSON over a Unix domain socket, for the technicians' CLI on the heater itself."""
