//! Pure domain types: tags and versions, update policies, image references.
