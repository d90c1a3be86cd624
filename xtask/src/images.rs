//! Base images: pull, or build locally with debootstrap when no registry answers.
