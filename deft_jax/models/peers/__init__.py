"""Published peers, written from their papers, as model choices beside DEFT (config folds.models)."""
