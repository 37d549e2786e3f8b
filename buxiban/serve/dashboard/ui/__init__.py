"""The dashboard's pages: hand-written HTML, CSS and JavaScript, shipped as package data and served
at /ui/ by `buxiban serve`. No build step and nothing fetched from elsewhere at runtime."""
