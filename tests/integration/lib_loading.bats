#!/usr/bin/env bats
# The library exports exactly the interposed libc names, and is linked read-only-after-relocation.

LIB="${PS_BUILD:-build}/libproxyshim.so"
CLIENT="${PS_BUILD:-build}/libproxyshim-client.so"
FD_HOOKS="close close_range closefrom dup dup2 dup3 fcntl fcntl64"

exports() {
	nm -D --defined-only "$1" | awk '{print $3}' | sort | tr '\n' ' '
}

sorted() {
	tr ' ' '\n' <<<"$*" | grep . | sort | tr '\n' ' '
}

@test "libproxyshim.so exports only the interposed symbols" {
	want=$(sorted accept accept4 getpeername getsockname listen epoll_ctl poll ppoll select \
		__poll_chk __ppoll_chk \
		pselect $FD_HOOKS execl execle execlp \
		execv execve execveat execvp execvpe fexecve posix_spawn posix_spawnp system popen pclose fclose \
		vfork __vfork \
		bind connect recv recvfrom recvmsg recvmmsg read readv __read_chk __recv_chk \
		__recvfrom_chk sendto sendmsg sendmmsg epoll_wait epoll_pwait syscall)
	[ "$(exports "$LIB")" = "$want" ]
}

@test "libproxyshim-client.so exports only the interposed symbols" {
	want=$(sorted connect accept accept4 getsockopt $FD_HOOKS write writev send sendto \
		sendmsg sendmmsg sendfile sendfile64 splice read readv recv recvfrom recvmsg \
		recvmmsg __read_chk __recv_chk __recvfrom_chk syscall \
		execl execle execlp execv execve execveat execvp execvpe fexecve posix_spawn posix_spawnp system popen pclose fclose \
		vfork __vfork)
	[ "$(exports "$CLIENT")" = "$want" ]
}

@test "both libraries: full RELRO (BIND_NOW), non-executable stack, a soname" {
	for lib in "$LIB" "$CLIENT"; do
		run readelf -d "$lib"
		[[ "$output" == *"(BIND_NOW)"* || "$output" == *"FLAGS"*"NOW"* ]]
		[[ "$output" == *"Library soname: [${lib##*/}]"* ]]
		run readelf -lW "$lib"
		[[ "$output" == *"GNU_RELRO"* ]]
		[[ "$output" =~ GNU_STACK[^$'\n']*RW\  ]]
	done
}

@test "hooks called from another library's constructor, before the shim's, work" {
	# Preloaded second, early.so's constructor runs first: accept4/fcntl/dup/dup2/
	# getpeername/close_range/epoll_wait reach the shim before it has resolved libc.
	preload="$LIB ${PS_BUILD:-build}/early.so"
	[ -z "${PS_ASAN_RUNTIME:-}" ] || preload="$PS_ASAN_RUNTIME $preload"
	run env PROXYSHIM_TRUSTED=127.0.0.1 LD_PRELOAD="$preload" /bin/true
	[ "$status" -eq 0 ]
	[ "$output" = "early: accept=1 dup=1,1,1 getpeername=0 same=1 dup2self=1,1 wait=0" ]
}

@test "a library preloaded twice (two copies): one clear line and exit 1, no recursion through its own syscall()" {
	local lib copy dir
	dir=$(mktemp -d)
	for lib in "$LIB" "$CLIENT"; do
		copy=$dir/${lib##*/}
		cp "$lib" "$copy"
		run env PROXYSHIM_TRUSTED=127.0.0.1 PROXYSHIM_SEND_TO=127.0.0.1 \
			LD_PRELOAD="${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME }$lib $copy" timeout 5 /bin/true
		[ "$status" -eq 1 ]
		[[ "$output" == "proxyshim: "*" resolves to a second copy of the shim (preloaded twice?)" ]]
	done
	rm -rf "$dir"
}
