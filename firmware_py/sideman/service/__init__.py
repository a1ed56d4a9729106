"""Running as a systemd service: readiness, watchdog, status lines and journald logging."""
