"""`kotune serve`: the web chat app, its accounts and store, and the model backends it talks to."""
