"""Partner mappings (declarative YAML/JSON), shipped as package data: issue 5, not written yet."""
