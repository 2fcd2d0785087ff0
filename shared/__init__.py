"""Code common to every service: config, logging, metrics, images, transport, store, inference runners."""
