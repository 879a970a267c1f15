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

@test "hooks called from another library's constructor, before the shim's, work" {
	# Preloaded second, early.so's constructor runs first: accept4/fcntl/dup/dup2/
	# getpeername/close_range reach the shim before it has resolved libc.
	preload="$LIB ${PS_BUILD:-build}/early.so"
	[ -z "${PS_ASAN_RUNTIME:-}" ] || preload="$PS_ASAN_RUNTIME $preload"
	run env PROXYSHIM_TRUSTED=127.0.0.1 LD_PRELOAD="$preload" /bin/true
	[ "$status" -eq 0 ]
	[ "$output" = "early: accept=1 dup=1,1,1 getpeername=0 same=1" ]
}
