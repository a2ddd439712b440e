// SPDX-License-Identifier: GPL-2.0
/*
 * crashme: makes the kernel report incidents on purpose, to record real
 * console excerpts for pinfuzz's console-pattern golden files
 * (harness/testdata/console/). Never loaded by pinfuzz itself.
 *
 * echo WHAT > /sys/kernel/debug/crashme, WHAT one of:
 *   warn      WARN_ON(1)
 *   refcount  refcount_t underflow (refcount_dec on 0)
 *   badpage   free a page whose ->mapping is set ("Bad page state")
 *   oops      NULL pointer dereference
 *   bug       BUG()
 *   lockup    spin 8 s with preemption off (boot with watchdog_thresh=1 so
 *             the soft-lockup watchdog fires after 2 s)
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/refcount.h>
#include <linux/delay.h>
#include <linux/string.h>
#include <linux/uaccess.h>

static struct dentry *crashme_file;

static noinline void crashme_warn(void)
{
	WARN_ON(1);
}

static noinline void crashme_refcount(void)
{
	refcount_t r = REFCOUNT_INIT(0);

	refcount_dec(&r);
}

static noinline void crashme_badpage(void)
{
	struct page *page = alloc_page(GFP_KERNEL);

	if (!page)
		return;
	page->mapping = (void *)0x1234;
	__free_page(page);
}

static noinline void crashme_oops(void)
{
	int *p = NULL;

	/* Keep the compiler from turning the known-NULL store into a trap. */
	OPTIMIZER_HIDE_VAR(p);
	*p = 1;
}

static noinline void crashme_lockup(void)
{
	preempt_disable();
	mdelay(8000);
	preempt_enable();
}

static ssize_t crashme_write(struct file *file, const char __user *ubuf,
			     size_t len, loff_t *ppos)
{
	char buf[16] = {};

	if (len >= sizeof(buf) || copy_from_user(buf, ubuf, len))
		return -EINVAL;
	strim(buf);
	if (!strcmp(buf, "warn"))
		crashme_warn();
	else if (!strcmp(buf, "refcount"))
		crashme_refcount();
	else if (!strcmp(buf, "badpage"))
		crashme_badpage();
	else if (!strcmp(buf, "oops"))
		crashme_oops();
	else if (!strcmp(buf, "bug"))
		BUG();
	else if (!strcmp(buf, "lockup"))
		crashme_lockup();
	else
		return -EINVAL;
	return len;
}

static const struct file_operations crashme_fops = {
	.owner = THIS_MODULE,
	.write = crashme_write,
};

static int __init crashme_init(void)
{
	crashme_file = debugfs_create_file("crashme", 0200, NULL, NULL,
					   &crashme_fops);
	return 0;
}

static void __exit crashme_exit(void)
{
	debugfs_remove(crashme_file);
}

module_init(crashme_init);
module_exit(crashme_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pinfuzz console golden file generator");
