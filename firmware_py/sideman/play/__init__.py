"""The session: each mode is a policy deciding when the AI plays and what it is asked for."""
