"""Service runtime: sd_notify, watchdog, signals, journald logging, exit codes."""
