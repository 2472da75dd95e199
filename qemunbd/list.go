package qemunbd

// list is -L: the exports of another server.
func (e *env) list(cfg *config, t *tlsSetup) int {
	return e.fail("List mode is not supported by goqio yet")
}
