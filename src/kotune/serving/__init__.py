"""`kotune serve`: the web application, its OpenAI-compatible API and the backend it serves."""
