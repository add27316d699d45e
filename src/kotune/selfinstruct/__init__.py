"""Self-instruct: a teacher model behind any OpenAI-compatible URL writes new Alpaca records from
a few seed tasks (Wang et al. 2023; Stanford Alpaca), adapted to Korean.

seeds.py (the seed tasks file), prompts.py (the request and the parser of numbered answers),
filters.py (what is kept and why not), cache.py (every request and response on disk),
client.py (retries, the prompt shrink, the teacher's errors), engine.py (the loop: rounds in a
fixed order, so concurrency never changes the output), run.py (a config in, the files out).
"""
