package trust

// SignUnchecked signs u without validating it, so tests can make the invalid updates Apply must refuse.
var SignUnchecked = sign
