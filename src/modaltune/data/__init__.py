"""The data layer: readers of standard inputs, cohort preparation, splits, the patient dataset."""
