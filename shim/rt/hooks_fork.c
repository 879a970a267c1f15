/* vfork runs as fork. A vfork child shares its parent's memory but has its own
 * descriptors: every close, dup2 or close_range it makes before exec (CPython's
 * subprocess closes every inherited descriptor so) would change the parent's fd table and
 * kept connections, and the parent would lose its clients' addresses. A fork child
 * changes only its own copy. POSIX allows vfork to be fork; the cost is the page tables'
 * copy. The wrapper cannot call the real vfork: its child would return through a frame
 * the parent still needs. */
#include "real.h"
#include "shim.h"

#include <unistd.h>

PS_EXPORT pid_t vfork(void)
{
	return real_fork();
}

PS_EXPORT pid_t __vfork(void)
{
	return real_fork();
}
