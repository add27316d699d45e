"""`kotune serve`: the OpenAI-compatible API, the web chat app with its accounts and store, and
the model backends they talk to."""
