"""metalbus power service: BMC power control and polling."""
