"""The AWS standby: one component per concern, composed per region by `StandbyRegion`."""
