"""Users and API keys: who may call what."""
