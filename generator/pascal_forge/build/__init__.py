"""Building recipes into the local channel: engine and CLI backends, the pytorch overlay, the channel index, resolve-check."""
