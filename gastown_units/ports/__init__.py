"""Adapters to the outside: tmux, bd, gt mail, process trees, file locks. All with timeouts."""
