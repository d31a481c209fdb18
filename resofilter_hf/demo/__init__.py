"""The demo: the whole story on the offline toy world (warm up a tiny model, score a flawed pool by resonance,
alignment and the baselines, retrain on selections, evaluate), as `resofilter demo` runs it."""
