"""Historical data: the Elliptic format on disk, its loader and cache, statistics of a data set."""
