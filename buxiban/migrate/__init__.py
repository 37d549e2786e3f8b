"""`buxiban migrate`: bring a hosted fine-tuning job home from any OpenAI-compatible service.

    source.py      the HTTP client (standard library only): bounded answers, no cross-site redirects,
                   429 waited on briefly, the key never in a message
    job.py         the source's job object, checked field by field
    mapping.py     the job's method and hyperparameters as a local run config, each with its reason
    held_out.py    the set the hosted and the local model are compared on
    bring_home.py  download, `data check`, held-out set, config and record, in a staging folder that
                   is renamed into place only when all of it is right
    to_serve.py    the same job created on a running `buxiban serve` instead of trained here

The CLI (cli/migrate.py) lists jobs, migrates the chosen ones, trains them and prints the `buxiban
eval` command that compares the hosted model with the local one before the hosted one shuts down."""
