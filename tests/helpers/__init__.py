"""What several test modules share: paths, tiny models, data files, launchers, reference steps."""
