"""Pure model of a Gas Town on disk: paths, rigs, identities, state files. No subprocesses."""
