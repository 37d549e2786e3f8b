"""`buxiban serve`: three products behind one FastAPI app.

app.py          settings, the state the routes share, assembly, serve()
safety.py       API key, body caps, bind rule, OpenAI-shaped error bodies
children.py     child processes tied to the server (training jobs, dashboard evaluations)
jsonbody.py     reading a JSON request body, shared by every route module
metrics_log.py  a run's metrics.jsonl read while training appends to it
api/            the OpenAI-compatible API: /v1/models, chat and text completions
tuning/         /v1/files and /v1/fine_tuning/jobs: the SQLite database, the job worker
dashboard/      the browser dashboard: its pages (ui/) and the /api JSON they poll
"""
