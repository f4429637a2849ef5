"""The evaluation harness: YAML suites → validated plan → trained models → evaluated cells → records."""
