"""Build support of the documentation site (mkdocs.yml): a MkDocs hook, a Griffe extension."""
