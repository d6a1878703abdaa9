"""Hosting the channel: publish a static site, serve it over HTTP, upload it."""
