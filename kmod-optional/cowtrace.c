// SPDX-License-Identifier: GPL-2.0
/* cowtrace.c - optional kernel module: records every copy-on-write break of a chosen process tree
 * (pid, page, user ip, time) into a ring buffer read through /dev/cowtrace (format in cowtrace.h). */

#include <linux/module.h>
#include <linux/kprobes.h>
#include <linux/tracepoint.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/sched/task_stack.h>
#include <linux/mm.h>
#include <linux/hashtable.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <linux/pid.h>
#include <linux/capability.h>
#include <linux/ktime.h>

#include "cowtrace.h"

static unsigned int buffer_records = 65536;
module_param(buffer_records, uint, 0444);
MODULE_PARM_DESC(buffer_records, "ring buffer size in records (48 bytes each); full buffer drops new records");
static unsigned int max_traced = 4096;
module_param(max_traced, uint, 0444);
MODULE_PARM_DESC(max_traced, "most processes traced at once; forks beyond it are counted, not traced");

/*
 * Traced set: struct pid pointers of thread groups. Holding a reference on the struct pid
 * (not the number) means a recycled pid number can never match a dead traced process.
 * Lookups run in the page-fault path under RCU; changes take traced_lock.
 */
struct traced {
	struct hlist_node node;
	struct pid *pid;
	struct rcu_head rcu;
};
static DEFINE_HASHTABLE(traced_hash, 8);
static DEFINE_SPINLOCK(traced_lock);
/* Checked first by every hook: one atomic read is all an untraced fault pays while armed. */
static atomic_t ntraced = ATOMIC_INIT(0);
static atomic64_t untraced_forks = ATOMIC64_INIT(0);

/* Ring buffer: head/tail are free-running counters, index = counter % capacity. */
static struct cowtrace_record *ring;
static u64 ring_cap, ring_head, ring_tail, next_seq, nrecorded, ndropped;
static DEFINE_SPINLOCK(ring_lock);
static DECLARE_WAIT_QUEUE_HEAD(readq);
/* One reader at a time: records are consumed by read(), two readers would each see half. */
static atomic_t reader_open = ATOMIC_INIT(0);

/*
 * Hooks are installed only while something is traced, so a loaded but idle module adds no
 * instruction to the fault path at all. arm_mutex serialises installing and removing them.
 */
static DEFINE_MUTEX(arm_mutex);
static bool armed;
static struct kprobe cow_kp;
static struct tracepoint *tp_fork, *tp_exit;
static void disarm_work_fn(struct work_struct *work);
static DECLARE_WORK(disarm_work, disarm_work_fn);

static bool traced_pid(struct pid *pid)
{
	struct traced *t;

	hash_for_each_possible_rcu(traced_hash, t, node, (unsigned long)pid)
		if (t->pid == pid)
			return true;
	return false;
}

static bool traced_pid_locked(struct pid *pid)
{
	struct traced *t;

	lockdep_assert_held(&traced_lock);
	hash_for_each_possible(traced_hash, t, node, (unsigned long)pid)
		if (t->pid == pid)
			return true;
	return false;
}

/* Returns 1 if added, 0 if already there, -errno. Takes its own reference on pid. */
static int traced_add(struct pid *pid, gfp_t gfp)
{
	struct traced *t = kmalloc(sizeof(*t), gfp);
	unsigned long flags;
	int ret = 1;

	if (!t)
		return -ENOMEM;
	spin_lock_irqsave(&traced_lock, flags);
	if (traced_pid_locked(pid)) {
		ret = 0;
	} else if (atomic_read(&ntraced) >= max_traced) {
		ret = -ENOSPC;
	} else {
		t->pid = get_pid(pid);
		hash_add_rcu(traced_hash, &t->node, (unsigned long)pid);
		atomic_inc(&ntraced);
		t = NULL;
	}
	spin_unlock_irqrestore(&traced_lock, flags);
	kfree(t);
	return ret;
}

static void traced_free_rcu(struct rcu_head *rcu)
{
	struct traced *t = container_of(rcu, struct traced, rcu);

	put_pid(t->pid);
	kfree(t);
}

/* pid NULL removes everything. Returns how many entries went away. */
static int traced_del(struct pid *pid)
{
	struct traced *t;
	struct hlist_node *tmp;
	unsigned long flags;
	int bkt, n = 0;

	spin_lock_irqsave(&traced_lock, flags);
	hash_for_each_safe(traced_hash, bkt, tmp, t, node) {
		if (pid && t->pid != pid)
			continue;
		hash_del_rcu(&t->node);
		atomic_dec(&ntraced);
		call_rcu(&t->rcu, traced_free_rcu);
		n++;
	}
	spin_unlock_irqrestore(&traced_lock, flags);
	return n;
}

static void ring_push(struct cowtrace_record *r)
{
	unsigned long flags;

	spin_lock_irqsave(&ring_lock, flags);
	r->seq = next_seq++;
	if (ring_head - ring_tail >= ring_cap) {
		ndropped++;
	} else {
		ring[ring_head % ring_cap] = *r;
		ring_head++;
		nrecorded++;
	}
	spin_unlock_irqrestore(&ring_lock, flags);
	if (wq_has_sleeper(&readq))
		wake_up_interruptible(&readq);
}

/*
 * The process whose page is copied: normally current, but a write through ptrace or /proc/PID/mem
 * faults in the writer's context on the target's mm; mm->owner (CONFIG_MEMCG) names the target then.
 * Returns a task_struct valid until rcu_read_unlock(), or NULL.
 */
static struct task_struct *page_owner_task(struct vm_area_struct *vma, struct task_struct *tsk)
{
	if (likely(vma->vm_mm == tsk->mm))
		return tsk;
#ifdef CONFIG_MEMCG
	return rcu_dereference(vma->vm_mm->owner);
#else
	return NULL;
#endif
}

/* kprobe at the entry of wp_page_copy(struct vm_fault *vmf): the kernel decided to copy. */
static int cow_pre(struct kprobe *kp, struct pt_regs *regs)
{
	struct vm_fault *vmf = (struct vm_fault *)regs_get_kernel_argument(regs, 0);
	struct task_struct *tsk = current, *owner;
	struct cowtrace_record r;
	bool hit = false;

	if (!atomic_read(&ntraced))
		return 0;
	rcu_read_lock();
	owner = page_owner_task(vmf->vma, tsk);
	if (owner) {
		hit = traced_pid(task_tgid(owner));
		r.pid = task_tgid_nr(owner);
	}
	rcu_read_unlock();
	if (!hit)
		return 0;

	r.time_ns = ktime_get_ns();
	r.addr = vmf->address & PAGE_MASK;
	r.offset = vmf->real_address & ~PAGE_MASK;
	/* Saved at kernel entry: for a user-mode fault this is the faulting instruction. A kernel
	 * thread has no user registers: it only gets here as a remote writer (e.g. io_uring worker). */
	r.ip = (tsk->flags & PF_KTHREAD) ? 0 : task_pt_regs(tsk)->ip;
	r.tid = task_pid_nr(tsk);
	r.flags = 0;
	if (vmf->flags & FAULT_FLAG_USER)
		r.flags |= COWTRACE_F_USER;
	if (vmf->flags & FAULT_FLAG_UNSHARE)
		r.flags |= COWTRACE_F_UNSHARE;
	if (is_zero_pfn(pte_pfn(vmf->orig_pte)))
		r.flags |= COWTRACE_F_ZERO_PAGE;
	if (!vmf->page)
		r.flags |= COWTRACE_F_NO_PAGE;
	if (owner != tsk)
		r.flags |= COWTRACE_F_REMOTE;
	ring_push(&r);
	return 0;
}

/* sched_process_fork runs in the parent before the child can run, so no child write is missed. */
static void probe_fork(void *data, struct task_struct *parent, struct task_struct *child)
{
	bool hit;

	if (!atomic_read(&ntraced) || !thread_group_leader(child))
		return;
	rcu_read_lock();
	hit = traced_pid(task_tgid(parent));
	rcu_read_unlock();
	if (hit && traced_add(task_tgid(child), GFP_ATOMIC) < 0)
		atomic64_inc(&untraced_forks);
}

/* Drop a process once its last thread exits, and the hooks once nothing is left. */
static void probe_exit(void *data, struct task_struct *p)
{
	if (!atomic_read(&ntraced) || atomic_read(&p->signal->live))
		return;
	if (traced_del(task_tgid(p)) && !atomic_read(&ntraced))
		schedule_work(&disarm_work);
}

static int arm_locked(void)
{
	int ret;

	lockdep_assert_held(&arm_mutex);
	if (armed)
		return 0;
	/* A struct kprobe cannot be registered twice: start from a clean one each time. */
	memset(&cow_kp, 0, sizeof(cow_kp));
	cow_kp.symbol_name = "wp_page_copy";
	cow_kp.pre_handler = cow_pre;
	ret = tracepoint_probe_register(tp_fork, probe_fork, NULL);
	if (ret)
		return ret;
	ret = tracepoint_probe_register(tp_exit, probe_exit, NULL);
	if (ret)
		goto out_fork;
	ret = register_kprobe(&cow_kp);
	if (ret)
		goto out_exit;
	armed = true;
	return 0;
out_exit:
	tracepoint_probe_unregister(tp_exit, probe_exit, NULL);
out_fork:
	tracepoint_probe_unregister(tp_fork, probe_fork, NULL);
	tracepoint_synchronize_unregister();
	return ret;
}

static void disarm_locked(void)
{
	lockdep_assert_held(&arm_mutex);
	if (!armed)
		return;
	unregister_kprobe(&cow_kp);
	tracepoint_probe_unregister(tp_exit, probe_exit, NULL);
	tracepoint_probe_unregister(tp_fork, probe_fork, NULL);
	/* After this no hook of ours is running or will run. */
	tracepoint_synchronize_unregister();
	armed = false;
}

static void disarm_work_fn(struct work_struct *work)
{
	mutex_lock(&arm_mutex);
	if (!atomic_read(&ntraced))
		disarm_locked();
	mutex_unlock(&arm_mutex);
}

static bool descends_from(struct task_struct *p, struct task_struct *root)
{
	struct task_struct *a;

	for (a = rcu_dereference(p->real_parent); a->pid; a = rcu_dereference(a->real_parent)) {
		if (same_thread_group(a, root))
			return true;
		if (a == rcu_dereference(a->real_parent))
			break;
	}
	return false;
}

static long ioc_add(int nr)
{
	struct task_struct *task, *p;
	struct pid *pid;
	long added = 0;
	int ret;

	if (nr <= 0)
		return -EINVAL;
	pid = find_get_pid(nr);
	task = pid ? get_pid_task(pid, PIDTYPE_PID) : NULL;
	put_pid(pid);
	if (!task)
		return -ESRCH;
	if (task->flags & PF_KTHREAD) {
		ret = -EINVAL;
		goto out;
	}
	if (task->flags & PF_EXITING) {
		ret = -ESRCH;
		goto out;
	}

	mutex_lock(&arm_mutex);
	/* Arm before adding: a fork racing with us is then caught by probe_fork or by the walk below. */
	ret = arm_locked();
	if (!ret)
		ret = traced_add(task_tgid(task), GFP_KERNEL);
	if (ret >= 0) {
		added = ret;
		rcu_read_lock();
		for_each_process(p) {
			if (!(p->flags & PF_EXITING) && descends_from(p, task)) {
				ret = traced_add(task_tgid(p), GFP_ATOMIC);
				if (ret < 0)
					break;
				added += ret;
			}
		}
		rcu_read_unlock();
	}
	if (!atomic_read(&ntraced))
		disarm_locked();
	mutex_unlock(&arm_mutex);
	if (ret >= 0)
		ret = added;
out:
	put_task_struct(task);
	return ret;
}

static long ioc_del(int nr)
{
	struct task_struct *task;
	struct pid *pid;
	int n;

	pid = find_get_pid(nr);
	task = pid ? get_pid_task(pid, PIDTYPE_PID) : NULL;
	put_pid(pid);
	if (!task)
		return -ESRCH;
	n = traced_del(task_tgid(task));
	put_task_struct(task);
	if (!n)
		return -ESRCH;
	if (!atomic_read(&ntraced))
		schedule_work(&disarm_work);
	return 0;
}

static void ioc_clear(void)
{
	mutex_lock(&arm_mutex);
	traced_del(NULL);
	disarm_locked();
	mutex_unlock(&arm_mutex);
}

static void get_stats(struct cowtrace_stats *s)
{
	unsigned long flags;

	memset(s, 0, sizeof(*s));
	s->abi_version = COWTRACE_ABI_VERSION;
	s->record_size = sizeof(struct cowtrace_record);
	spin_lock_irqsave(&ring_lock, flags);
	s->capacity = ring_cap;
	s->queued = ring_head - ring_tail;
	s->recorded = nrecorded;
	s->dropped = ndropped;
	spin_unlock_irqrestore(&ring_lock, flags);
	s->traced = atomic_read(&ntraced);
	s->untraced_forks = atomic64_read(&untraced_forks);
	s->armed = READ_ONCE(armed);
	s->missed = s->armed ? READ_ONCE(cow_kp.nmissed) : 0;
}

static long ct_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;
	struct cowtrace_stats st;
	int nr;

	switch (cmd) {
	case COWTRACE_IOC_STATS:
		get_stats(&st);
		return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
	case COWTRACE_IOC_ADD_PID:
	case COWTRACE_IOC_DEL_PID:
		/* Tracing reveals other processes' addresses and code pointers. */
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
		if (get_user(nr, (int __user *)uarg))
			return -EFAULT;
		return cmd == COWTRACE_IOC_ADD_PID ? ioc_add(nr) : ioc_del(nr);
	case COWTRACE_IOC_CLEAR:
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
		ioc_clear();
		return 0;
	}
	return -ENOTTY;
}

static int ct_open(struct inode *inode, struct file *f)
{
	/* Write-only opens are for control (ioctls) and never conflict with the reader. */
	if ((f->f_mode & FMODE_READ) && atomic_cmpxchg(&reader_open, 0, 1))
		return -EBUSY;
	return nonseekable_open(inode, f);
}

static int ct_release(struct inode *inode, struct file *f)
{
	if (f->f_mode & FMODE_READ)
		atomic_set(&reader_open, 0);
	return 0;
}

static bool ring_nonempty(void)
{
	return READ_ONCE(ring_head) != READ_ONCE(ring_tail);
}

#define READ_CHUNK 64

static ssize_t ct_read(struct file *f, char __user *buf, size_t len, loff_t *off)
{
	struct cowtrace_record *bounce;
	size_t want = len / sizeof(*bounce), done = 0;
	unsigned long flags;
	int ret;

	if (!want)
		return -EINVAL;
	while (!ring_nonempty()) {
		if (f->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(readq, ring_nonempty());
		if (ret)
			return ret;
	}
	bounce = kmalloc_array(READ_CHUNK, sizeof(*bounce), GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	while (done < want) {
		size_t n = 0;

		/* Copy under the lock, copy_to_user outside it: the only consumer is us (one reader). */
		spin_lock_irqsave(&ring_lock, flags);
		while (n < READ_CHUNK && done + n < want && ring_tail + n != ring_head) {
			bounce[n] = ring[(ring_tail + n) % ring_cap];
			n++;
		}
		spin_unlock_irqrestore(&ring_lock, flags);
		if (!n)
			break;
		if (copy_to_user(buf + done * sizeof(*bounce), bounce, n * sizeof(*bounce))) {
			if (!done)
				done = (size_t)-1;
			break;
		}
		spin_lock_irqsave(&ring_lock, flags);
		ring_tail += n;
		spin_unlock_irqrestore(&ring_lock, flags);
		done += n;
	}
	kfree(bounce);
	if (done == (size_t)-1)
		return -EFAULT;
	return done * sizeof(struct cowtrace_record);
}

static __poll_t ct_poll(struct file *f, poll_table *wait)
{
	poll_wait(f, &readq, wait);
	return ring_nonempty() ? EPOLLIN | EPOLLRDNORM : 0;
}

static const struct file_operations ct_fops = {
	.owner = THIS_MODULE,
	.open = ct_open,
	.release = ct_release,
	.read = ct_read,
	.poll = ct_poll,
	.unlocked_ioctl = ct_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

static struct miscdevice ct_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "cowtrace",
	.fops = &ct_fops,
	.mode = 0600,
};

static void find_tracepoints(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_process_fork"))
		tp_fork = tp;
	else if (!strcmp(tp->name, "sched_process_exit"))
		tp_exit = tp;
}

static int __init cowtrace_init(void)
{
	int ret;

	if (!buffer_records)
		return -EINVAL;
	for_each_kernel_tracepoint(find_tracepoints, NULL);
	if (!tp_fork || !tp_exit) {
		pr_err("cowtrace: sched_process_fork/exit tracepoints not found\n");
		return -ENOENT;
	}
	ring_cap = buffer_records;
	ring = vmalloc(array_size(ring_cap, sizeof(*ring)));
	if (!ring)
		return -ENOMEM;
	/* Probe the hook once so a kernel without wp_page_copy fails at load, not at first use. */
	mutex_lock(&arm_mutex);
	ret = arm_locked();
	disarm_locked();
	mutex_unlock(&arm_mutex);
	if (ret) {
		pr_err("cowtrace: cannot hook wp_page_copy: %d\n", ret);
		goto err;
	}
	ret = misc_register(&ct_misc);
	if (ret)
		goto err;
	return 0;
err:
	vfree(ring);
	return ret;
}

static void __exit cowtrace_exit(void)
{
	misc_deregister(&ct_misc);
	/* Hooks first: once they are gone nothing can queue disarm_work again. */
	ioc_clear();
	cancel_work_sync(&disarm_work);
	/* Wait for traced_free_rcu callbacks: their code goes away with the module. */
	rcu_barrier();
	vfree(ring);
}

module_init(cowtrace_init);
module_exit(cowtrace_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Record copy-on-write breaks of a process tree");
