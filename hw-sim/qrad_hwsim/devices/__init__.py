"""Emulated devices of hw-sim; the UART sensors are served on pseudo-terminals (see uart_pty)."""
