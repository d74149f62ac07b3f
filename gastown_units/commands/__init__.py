"""Operator commands of ``gastown-units`` that change the machine (setup, sync-rigs) and
small helpers the units run; each module exposes one click command that cli.py adds."""
