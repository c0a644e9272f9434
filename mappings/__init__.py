"""Partner mappings (declarative YAML) with their ConceptMaps and code systems, shipped as
package data so an installed gateway finds them: see README.md in this folder."""
