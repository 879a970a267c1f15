#!/usr/bin/env bats
# The build's own checks catch what they are for (make check-symbols runs the check on
# both libraries in make test).

load helpers
load daemons

# A library exporting poll() whose other code calls poll(): the call binds to its own
# interposer, which scripts/check-symbols must report.
@test "check-symbols fails on a library that calls its own exported interposer, and names the caller" {
	need_cmds cc nm readelf objdump
	cat >"$T/self.c" <<-'SRC'
		#include <poll.h>
		__attribute__((visibility("default"))) int poll(struct pollfd *f, nfds_t n, int t)
		{
			(void)f; (void)n;
			return t;
		}
		__attribute__((visibility("default"))) int waits_inside(void)
		{
			return poll(0, 0, 0);
		}
	SRC
	cc -shared -fPIC -fvisibility=hidden -o "$T/libself.so" "$T/self.c"
	run "$BATS_TEST_DIRNAME/../../scripts/check-symbols" "$T/libself.so"
	((status == 1)) || fail "status $status: $output"
	[[ $output == *"calls its own exported poll (from: <waits_inside>"* ]] || fail "$output"
}
