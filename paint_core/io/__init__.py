"""Files: checkpoints and sidecars, conversion of research pickles, run directories, results files, safe writes."""
