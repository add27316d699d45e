"""One file per schema version; 0001 is the first."""
