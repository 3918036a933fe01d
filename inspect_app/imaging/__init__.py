"""Image analysis shared by synthesis and post-processing: where the part is, and the words for
where on it and how big something is."""
