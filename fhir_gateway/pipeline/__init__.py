"""After mapping: identity resolution, merging, validation, storage and provenance.

partner file -> ingest (readers, mapping) -> pipeline.identity -> pipeline.merge ->
validation -> store (via the repository) -> Provenance. `pipeline.loader.Loader` runs it.
"""
