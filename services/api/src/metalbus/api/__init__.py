"""metalbus api service: the HTTP front door (FastAPI), auth, event log and live event stream."""
