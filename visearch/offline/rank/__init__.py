"""Learning to rank: judged queries, feedback reading, fitting the ranker's factor weights (``visearch rank``)."""
