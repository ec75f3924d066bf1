"""lenet sweep: recipes and seeds trained on Ray Tune, ranked on a validation split."""
