//! The code cache: decoded blocks, their translations in one executable buffer, block
//! chaining and the indirect-jump table, keyed by guest pc.
//!
//! Invariants:
//! - Every block record is the decoding of the guest bytes at its pc at the time it was
//!   decoded; every page those bytes came from carries `PERM_CODE` and lists the block in
//!   `by_page`. A block whose page is invalidated is marked dead and unreachable: removed from
//!   the pc map and the fast table, its jump-table entry cleared, and every site chained to
//!   it restored to its stub, before the dispatcher looks up anything again.
//! - Translated code lives in a `dynasmrt` assembler created with the cache's whole capacity,
//!   so the executable buffer never grows or moves: before translating, the cache flushes
//!   itself (drops every block and the buffer) if the block's worst-case size might not fit.
//!   A lazy cache (the hybrid engine's) makes its buffer only for its first translation, so a
//!   short process whose blocks never get hot maps no executable memory at all. Host addresses of translations (jump table, chained jumps) therefore stay
//!   valid until the next flush. The buffer is never writable and executable at once:
//!   `dynasmrt` remaps it writable for each commit or patch and executable again after.
//! - Block records, their decoded instructions (which helpers read through pointers baked
//!   into the code) and exit-site records are append-only until the next flush, so every
//!   pointer translated code holds stays valid for as long as that code can run.
//! - A site is patched (chained) only to a live translated block whose pc is the site's
//!   target, and only while the site's own block is live.

use crate::context::{JitContext, EXIT_NEXT};
use crate::translate::Asm;
use crate::translate::{self, jtab_slot, max_code_bytes, Options, JTAB_SIZE};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_exec_core::memory::{AddressSpace, JitFaultScope, GUARD_SIZE, PAGE_SHIFT};
use vm_exec_interp::block::{fetch_block, Block, PcMap, SharedBlocks, Tail};

/// A block the dispatcher has seen: decoded always, translated once hot.
pub(crate) struct BlockRec {
    /// Guest pc of the first instruction.
    pub pc: u64,
    /// The decoded instructions (translated code points into `block.insts`).
    pub block: Arc<Block>,
    /// First and last guest page its bytes come from.
    pages: (u64, u64),
    /// False once invalidated or flushed.
    pub live: bool,
    /// Offset of the translated entry, once translated.
    pub entry: Option<usize>,
    /// Sites chained to this block.
    incoming: Vec<u32>,
}

impl BlockRec {
    /// Number of instructions.
    pub fn len(&self) -> u64 {
        self.block.insts.len() as u64
    }
}

/// One direct exit of a translated block.
struct ExitSite {
    /// Offset of the `jmp rel32`.
    jmp: usize,
    /// Offset of the stub (where the jump leads unchained).
    stub: usize,
    /// Guest pc the exit leads to.
    target: u64,
    /// The block the site belongs to.
    owner: u32,
    /// The block it is chained to.
    chained: Option<u32>,
}

/// One jump-table entry, read by translated code: `[pc, host address]`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct JumpEntry {
    pc: u64,
    code: u64,
}

const EMPTY_JUMP: JumpEntry = JumpEntry { pc: u64::MAX, code: 0 };

const FAST_SIZE: usize = 1 << 12;

#[inline(always)]
fn fast_slot(pc: u64) -> usize {
    ((pc >> 1) as usize ^ (pc >> 13) as usize) & (FAST_SIZE - 1)
}

/// Counters of the cache.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CacheCounters {
    /// Lookups that found a block.
    pub hits: u64,
    /// Lookups that decoded a block.
    pub misses: u64,
    /// Blocks translated.
    pub translated: u64,
    /// Blocks dropped by invalidation or flush.
    pub invalidations: u64,
    /// Whole-cache flushes.
    pub flushes: u64,
    /// Sites chained.
    pub chains: u64,
    /// Time spent decoding and translating.
    pub compile_time: Duration,
}

/// Decoded blocks and their translations for one address space.
pub(crate) struct CodeCache {
    /// The executable buffer, once made (see the module docs).
    buf: Option<CodeBuffer>,
    capacity: usize,
    blocks: Vec<BlockRec>,
    map: PcMap<u32>,
    fast: Box<[(u64, u32)]>,
    by_page: PcMap<Vec<u32>>,
    sites: Vec<ExitSite>,
    jtab: Box<[JumpEntry]>,
    opts: Options,
    /// Decoded blocks of the program image, shared with its other processes.
    shared: Option<Arc<SharedBlocks>>,
    /// Counters since creation.
    pub counters: CacheCounters,
}

/// The executable buffer could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot allocate executable memory for the code cache: {0}")]
pub struct CodeBufferError(#[from] std::io::Error);

/// One code buffer: a memfd mapped twice, a read-write view the translator writes through
/// and a read-execute view translated code runs from (see the module docs).
struct CodeBuffer {
    /// Host address of the read-write view.
    rw: *mut u8,
    /// Host address of offset 0 of the read-execute view.
    base: usize,
    /// Bytes of both views.
    capacity: usize,
    /// Bytes written so far.
    used: usize,
    /// Offset of the entry trampoline.
    trampoline: usize,
    /// Host address of the common exit.
    exit: usize,
    /// The assembler, reused from block to block.
    asm: Asm,
    /// Fault sites of every translation in the buffer: `(site, slow path)` offsets, sorted
    /// (translations are appended, and each lists its sites in order).
    fault_sites: Vec<(u32, u32)>,
}

// SAFETY: the views are private mappings owned by this value; moving it moves the only handle.
unsafe impl Send for CodeBuffer {}

impl CodeBuffer {
    fn new(capacity: usize) -> Result<CodeBuffer, CodeBufferError> {
        let capacity = capacity.next_multiple_of(4096);
        // SAFETY: memfd_create with a NUL-terminated name has no memory-safety preconditions.
        let fd = unsafe { libc::memfd_create(c"vmx-code".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(CodeBufferError(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor we own; OwnedFd closes it on every path (the
        // mappings keep the file alive).
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), capacity as libc::off_t) } != 0 {
            return Err(CodeBufferError(std::io::Error::last_os_error()));
        }
        let map = |prot: i32| -> std::io::Result<*mut u8> {
            // SAFETY: a fresh shared mapping of our memfd at an address of the kernel's
            // choosing aliases nothing but the other view of the same file.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    capacity,
                    prot,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            Ok(p.cast())
        };
        let rw = map(libc::PROT_READ | libc::PROT_WRITE)?;
        let rx = match map(libc::PROT_READ | libc::PROT_EXEC) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `rw` was mapped just above with this length and is not used yet.
                unsafe { libc::munmap(rw.cast(), capacity) };
                return Err(CodeBufferError(e));
            }
        };
        let base = rx as usize;
        let mut buf = CodeBuffer {
            rw,
            base,
            capacity,
            used: 0,
            trampoline: 0,
            exit: 0,
            asm: Asm::new(base),
            fault_sites: Vec::new(),
        };
        let (entry, exit) = translate::emit_trampoline(&mut buf.asm);
        let code =
            buf.asm.take().map_err(|e| CodeBufferError(std::io::Error::other(e.to_string())))?;
        buf.trampoline = entry;
        buf.exit = base + exit;
        buf.append(&code);
        Ok(buf)
    }

    fn used(&self) -> usize {
        self.used
    }

    /// Copies `code` to the end of the buffer (the caller checked that it fits).
    fn append(&mut self, code: &[u8]) {
        assert!(self.used + code.len() <= self.capacity);
        // SAFETY: the range is inside the read-write view (asserted), which nothing else
        // writes; translated code never runs from bytes past `used`, so no running code
        // changes under it.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.rw.add(self.used), code.len()) };
        self.used += code.len();
    }

    /// Writes the `rel32` of the `jmp` at `jmp` so that it leads to offset `dest`.
    fn patch(&mut self, jmp: usize, dest: usize) {
        assert!(jmp + 5 <= self.used && dest < self.used);
        let rel = (dest as i64 - (jmp as i64 + 5)) as i32;
        // SAFETY: the four bytes are inside the written part of the read-write view
        // (asserted). The code cache belongs to one engine instance, which runs translated
        // code on one host thread at a time and never while patching; x86-64 keeps
        // instruction fetch coherent with stores through the other view.
        unsafe {
            std::ptr::write_unaligned(self.rw.add(jmp + 1).cast::<[u8; 4]>(), rel.to_le_bytes())
        };
    }
}

impl Drop for CodeBuffer {
    fn drop(&mut self) {
        // SAFETY: both views were mapped in `new` with this length and are owned by this value;
        // nothing runs or refers to their code once the cache dropped its tables.
        unsafe {
            libc::munmap(self.rw.cast(), self.capacity);
            libc::munmap(self.base as *mut libc::c_void, self.capacity);
        }
    }
}

impl CodeCache {
    /// An empty cache whose translations take at most `capacity` bytes. An eager cache makes
    /// its executable buffer now (and fails if it cannot); a lazy one on its first
    /// translation.
    pub fn new(capacity: usize, opts: Options, eager: bool) -> Result<Self, CodeBufferError> {
        // At least a page; blocks whose worst case does not fit even in an empty buffer stay
        // interpreted (see `translate`).
        let capacity = capacity.max(4096);
        let buf = if eager { Some(CodeBuffer::new(capacity)?) } else { None };
        Ok(CodeCache {
            buf,
            capacity,
            blocks: Vec::new(),
            map: PcMap::default(),
            fast: vec![(u64::MAX, 0); FAST_SIZE].into_boxed_slice(),
            by_page: PcMap::default(),
            sites: Vec::new(),
            jtab: vec![EMPTY_JUMP; JTAB_SIZE].into_boxed_slice(),
            opts,
            shared: None,
            counters: CacheCounters::default(),
        })
    }

    /// Takes decoded blocks from (and gives them to) the other processes of a program image.
    pub fn share(&mut self, shared: Arc<SharedBlocks>) {
        self.shared = Some(shared);
    }

    /// Whether chaining is enabled.
    pub fn chaining(&self) -> bool {
        self.opts.chaining
    }

    /// Host address of the jump table, for [`JitContext::jtab`].
    pub fn jtab_addr(&self) -> u64 {
        self.jtab.as_ptr() as u64
    }

    /// Number of live blocks (decoded or translated).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes of executable buffer in use.
    pub fn code_bytes(&self) -> usize {
        self.buf.as_ref().map_or(0, CodeBuffer::used)
    }

    /// The block record `id`.
    #[inline(always)]
    pub fn get(&self, id: u32) -> &BlockRec {
        &self.blocks[id as usize]
    }

    /// The live block at `pc` if the cache has one (never decodes).
    #[inline]
    pub fn find(&mut self, pc: u64) -> Option<u32> {
        let slot = fast_slot(pc);
        let (tag, id) = self.fast[slot];
        if tag == pc {
            self.counters.hits += 1;
            return Some(id);
        }
        let id = *self.map.get(&pc)?;
        self.counters.hits += 1;
        self.fast[slot] = (pc, id);
        Some(id)
    }

    /// The live block at `pc`, decoding it (and marking its pages as code) on a miss.
    #[inline]
    pub fn lookup(&mut self, mem: &AddressSpace, pc: u64) -> u32 {
        let slot = fast_slot(pc);
        let (tag, id) = self.fast[slot];
        if tag == pc {
            self.counters.hits += 1;
            return id;
        }
        if let Some(&id) = self.map.get(&pc) {
            self.counters.hits += 1;
            self.fast[slot] = (pc, id);
            return id;
        }
        self.counters.misses += 1;
        let mut nanos = 0;
        let (block, _) = fetch_block(self.shared.as_deref(), mem, pc, &mut nanos);
        self.counters.compile_time += Duration::from_nanos(nanos);
        let code_end = match block.tail {
            // The undecodable instruction's first bytes were read too; watch their page.
            Tail::Illegal => block.end.wrapping_add(2),
            _ => block.end,
        };
        if code_end > pc {
            mem.mark_code(pc, code_end - pc);
        }
        let first_page = pc >> PAGE_SHIFT;
        let last_page =
            (code_end.max(pc.wrapping_add(1)).wrapping_sub(1) >> PAGE_SHIFT).max(first_page);
        let id = self.blocks.len() as u32;
        for page in first_page..=last_page {
            self.by_page.entry(page).or_default().push(id);
        }
        self.blocks.push(BlockRec {
            pc,
            block,
            pages: (first_page, last_page),
            live: true,
            entry: None,
            incoming: Vec::new(),
        });
        self.map.insert(pc, id);
        self.fast[slot] = (pc, id);
        id
    }

    /// Translates block `id` if it is not yet, flushing the cache first if its code might
    /// not fit. Returns the (possibly new, after a flush) id of the translated block at the
    /// same pc.
    pub fn translate(&mut self, mem: &AddressSpace, mut id: u32) -> u32 {
        if self.blocks[id as usize].entry.is_some() {
            return id;
        }
        let n = self.blocks[id as usize].block.insts.len();
        if self.buf.as_ref().is_some_and(|b| b.used() + max_code_bytes(n) > self.capacity) {
            let pc = self.blocks[id as usize].pc;
            self.flush();
            id = self.lookup(mem, pc);
        }
        if self.buf.is_none() {
            match CodeBuffer::new(self.capacity) {
                Ok(b) => self.buf = Some(b),
                Err(e) => {
                    // No executable memory to be had: the block stays interpreted.
                    tracing::error!(error = %e, "cannot allocate a code buffer");
                    return id;
                }
            }
        }
        let Some(buf) = self.buf.as_mut() else { return id };
        if buf.used() + max_code_bytes(n) > self.capacity {
            // Does not fit even in an empty buffer: stay untranslated.
            return id;
        }
        let t0 = Instant::now();
        let first_site = self.sites.len() as u32;
        let rec = &self.blocks[id as usize];
        let at = buf.used;
        buf.asm = Asm::new(buf.base + at);
        let t = translate::translate(&mut buf.asm, &rec.block, first_site, self.opts, buf.exit);
        let code = match buf.asm.take() {
            Ok(code) if at + code.len() <= self.capacity => code,
            Ok(_) => {
                tracing::error!(pc = rec.pc, "translation exceeded its size bound");
                return id;
            }
            Err(e) => {
                // An encoding error is a translator bug; the block stays interpreted-only
                // (the dispatcher falls back to the interpreter for untranslated blocks).
                tracing::error!(pc = rec.pc, error = %e, "translation failed to assemble");
                return id;
            }
        };
        buf.append(&code);
        buf.fault_sites.extend(
            t.fault_sites.iter().map(|&(site, slow)| ((at + site) as u32, (at + slow) as u32)),
        );
        for s in &t.sites {
            self.sites.push(ExitSite {
                jmp: at + s.jmp,
                stub: at + s.stub,
                target: s.target,
                owner: id,
                chained: None,
            });
        }
        self.blocks[id as usize].entry = Some(at + t.entry);
        self.counters.translated += 1;
        self.counters.compile_time += t0.elapsed();
        id
    }

    /// Host address of translated code at `offset`.
    #[inline(always)]
    pub fn host(&self, offset: usize) -> *const u8 {
        (self.buf.as_ref().map_or(0, |b| b.base) + offset) as *const u8
    }

    /// Runs translated code at `entry` with `ctx` until it exits; returns the exit code.
    ///
    /// # Safety
    /// `ctx` must be fully set up for the process being run (see [`crate::context`]): its
    /// memory fields describe the live address space that `ctx.mem` points to, and `jtab` is
    /// this cache's table.
    pub unsafe fn enter(&self, ctx: &mut JitContext, entry: usize) -> u32 {
        type Entry = unsafe extern "sysv64" fn(*mut JitContext, *const u8) -> u32;
        // Translations exist only while their buffer does.
        let Some(buf) = &self.buf else { return EXIT_NEXT };
        let mem_start = ctx.mem_base as usize;
        let scope = JitFaultScope {
            code: (buf.base, buf.base + buf.capacity),
            mem: (mem_start - GUARD_SIZE, mem_start + ctx.mem_size as usize + GUARD_SIZE),
            sites: buf.fault_sites.as_ptr(),
            len: buf.fault_sites.len(),
        };
        // SAFETY: the table is sorted (see `fault_sites`) and not changed while the code runs
        // (translation happens outside `enter`, on this thread); each listed site is a guest
        // access whose slow path expects exactly the registers at the access (translate's
        // memory module), so resuming there after a host fault redoes it through the checked
        // path.
        let _scope = unsafe { scope.enter() };
        // SAFETY: `trampoline` is the offset of the code `emit_trampoline` produced, which has
        // exactly this signature, in the live executable buffer (it never moves, see module
        // docs).
        let f: Entry =
            unsafe { std::mem::transmute::<*const u8, Entry>(self.host(buf.trampoline)) };
        // SAFETY: the caller guarantees the context; `entry` is the entry of a live
        // translation in this buffer, which only reads and writes the context, guest memory
        // inside the checked bounds, and calls the helpers.
        unsafe { f(ctx, self.host(entry)) }
    }

    /// Chains exit site `site` to the block `target` if both are still live and match.
    pub fn chain(&mut self, site: u32, target: u32) {
        let Some(s) = self.sites.get(site as usize) else { return };
        let t = &self.blocks[target as usize];
        let Some(entry) = t.entry else { return };
        if s.chained.is_some() || !t.live || t.pc != s.target || !self.blocks[s.owner as usize].live
        {
            return;
        }
        let jmp = s.jmp;
        if self.patch(&[(jmp, entry)]) {
            self.sites[site as usize].chained = Some(target);
            self.blocks[target as usize].incoming.push(site);
            self.counters.chains += 1;
        }
    }

    /// Enters translated block `target` in the jump table (for `jalr`).
    pub fn add_indirect(&mut self, target: u32) {
        let t = &self.blocks[target as usize];
        if let (true, Some(entry)) = (t.live, t.entry) {
            self.jtab[jtab_slot(t.pc)] = JumpEntry { pc: t.pc, code: self.host(entry) as u64 };
        }
    }

    /// Rewrites the `rel32` of each `(jmp offset, destination offset)` pair. Returns false if
    /// the buffer could not be remapped (nothing changed then).
    fn patch(&mut self, patches: &[(usize, usize)]) -> bool {
        if patches.is_empty() {
            return true;
        }
        // Chained sites exist only in translations, so only while the buffer does.
        let Some(buf) = self.buf.as_mut() else { return true };
        for &(jmp, dest) in patches {
            buf.patch(jmp, dest);
        }
        true
    }

    /// Drops every block with bytes on one of `pages` (page-aligned addresses).
    pub fn invalidate_pages(&mut self, pages: &[u64]) {
        let mut unpatch = Vec::new();
        for &addr in pages {
            let Some(ids) = self.by_page.remove(&(addr >> PAGE_SHIFT)) else { continue };
            for id in ids {
                self.kill(id, &mut unpatch);
            }
        }
        self.patch(&unpatch);
    }

    fn kill(&mut self, id: u32, unpatch: &mut Vec<(usize, usize)>) {
        let rec = &mut self.blocks[id as usize];
        if !rec.live {
            return;
        }
        rec.live = false;
        self.counters.invalidations += 1;
        let pc = rec.pc;
        let (first, last) = rec.pages;
        let incoming = std::mem::take(&mut rec.incoming);
        if self.map.get(&pc) == Some(&id) {
            self.map.remove(&pc);
        }
        let slot = fast_slot(pc);
        if self.fast[slot] == (pc, id) {
            self.fast[slot] = (u64::MAX, 0);
        }
        let j = &mut self.jtab[jtab_slot(pc)];
        if j.pc == pc {
            *j = EMPTY_JUMP;
        }
        for site in incoming {
            let s = &mut self.sites[site as usize];
            if s.chained == Some(id) {
                s.chained = None;
                if self.blocks[s.owner as usize].live {
                    unpatch.push((s.jmp, s.stub));
                }
            }
        }
        // The block's other pages still list it; `kill` ignores dead blocks, and the lists
        // are dropped with the pages' next invalidation or the next flush.
        if first != last {
            for page in first..=last {
                if let Some(ids) = self.by_page.get_mut(&page) {
                    ids.retain(|&b| b != id);
                    if ids.is_empty() {
                        self.by_page.remove(&page);
                    }
                }
            }
        }
    }

    /// Drops every block and starts a fresh executable buffer.
    pub fn flush(&mut self) {
        let live = self.blocks.iter().filter(|b| b.live).count() as u64;
        self.counters.invalidations += live;
        self.counters.flushes += 1;
        // The next translation makes a fresh buffer; nothing refers to this one any more
        // once the tables are cleared below.
        self.buf = None;
        self.blocks.clear();
        self.map.clear();
        self.fast.fill((u64::MAX, 0));
        self.by_page.clear();
        self.sites.clear();
        self.jtab.fill(EMPTY_JUMP);
    }
}
