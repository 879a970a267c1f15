#!/usr/bin/env bats
# The library exports exactly the interposed libc names, and is linked read-only-after-relocation.

LIB="${PS_BUILD:-build}/libproxyshim.so"

@test "exports only the interposed symbols" {
	run bash -c "nm -D --defined-only '$LIB' | awk '{print \$3}' | sort | tr '\n' ' '"
	[ "$status" -eq 0 ]
	[ "$output" = "accept accept4 close close_range closefrom dup dup2 dup3 fcntl fcntl64 getpeername getsockname " ]
}

@test "linked with full RELRO (BIND_NOW) and a soname" {
	run readelf -d "$LIB"
	[[ "$output" == *"(BIND_NOW)"* || "$output" == *"FLAGS"*"NOW"* ]]
	[[ "$output" == *"Library soname: [libproxyshim.so]"* ]]
	run readelf -l "$LIB"
	[[ "$output" == *"GNU_RELRO"* ]]
}
