import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import type { GuestImage, ImageSource } from '../image/image.js';
import type { VmRecord, VmShape } from '../store/store.js';

/**
 * What a VM is made of: its image and shape (memory, vCPUs, disk), decided
 * when it is created and recorded with it (Store.createVm), so a later
 * change of the server's defaults never changes an existing VM.
 */

/** What a caller may ask of a VM it creates; absent fields take the server's defaults. */
export interface ShapeRequest {
  image?: string;
  memoryMiB?: number;
  cpus?: number;
  diskMiB?: number;
}

/** The server's defaults for new VMs, and the most any VM may have (MiB, vCPUs). */
export interface ShapeLimits {
  memoryMiB: number;
  cpus: number;
  diskSizeMiB: number;
  maxMemoryMiB: number;
  maxCpus: number;
  maxDiskSizeMiB: number;
}

export interface ResolvedShape {
  shape: VmShape;
  image: GuestImage;
  /** The VM does not exist yet: `shape` is to be recorded when it is made. */
  isNew: boolean;
}

/**
 * `name`'s image and shape: the recorded ones for an existing VM (a VM from
 * before shapes were recorded has the default image's disk and the server's
 * defaults), or `request` over the defaults for a new one. Throws a
 * UserError for a value above the server's maximums (naming it) or an image
 * that does not exist (naming those that do). A request for an existing VM
 * is not an error: the VM keeps what it has (the caller may say so).
 */
export function resolveShape(
  name: string,
  deps: { dataDir: string; images: ImageSource; limits: ShapeLimits; record: VmRecord | undefined },
  request: ShapeRequest = {},
): ResolvedShape {
  const { limits, images } = deps;
  if (deps.record?.shape) return { shape: deps.record.shape, image: images.load(deps.record.shape.image), isNew: false };
  const dir = join(deps.dataDir, 'vms', name);
  if (existsSync(dir)) {
    // A copy-on-write disk means an image that was recorded once: never take it for the default image's data disk.
    if (existsSync(join(dir, 'disk.qcow2'))) throw new UserError(`VM ${name} has lost the record of its image (state.db); its disk is kept in ${dir}`);
    // Made before images and shapes were recorded: it has the default image's data disk.
    const shape = { image: 'default', memoryMiB: limits.memoryMiB, cpus: limits.cpus, diskMiB: limits.diskSizeMiB };
    return { shape, image: images.load(images.names().includes('default') ? 'default' : images.defaultName), isNew: false };
  }
  const image = images.load(request.image ?? images.defaultName);
  const least = effectiveDiskMiB(image, 0);
  if (request.diskMiB !== undefined && request.diskMiB < least) {
    throw new UserError(`disk size ${request.diskMiB} MiB is smaller than image ${image.name}'s file system; ask for at least ${least} MiB`);
  }
  const shape: VmShape = {
    image: image.name,
    memoryMiB: request.memoryMiB ?? limits.memoryMiB,
    cpus: request.cpus ?? limits.cpus,
    // What the VM will have: the server's default disk grows to the image where the image is bigger.
    diskMiB: effectiveDiskMiB(image, request.diskMiB ?? limits.diskSizeMiB),
  };
  checkLimits(shape, limits);
  return { shape, image, isNew: true };
}

/** A VM's disk size in MiB as it will be: a root filesystem image's VM never has less than the image's file system. */
export function effectiveDiskMiB(image: GuestImage, diskMiB: number): number {
  return image.rootfs ? Math.max(diskMiB, Math.ceil(image.rootfs.fsBytes / (1024 * 1024))) : diskMiB;
}

/** Throws a UserError naming the first value of `shape` above (or below) what the server allows. */
export function checkLimits(shape: Omit<VmShape, 'image'>, limits: ShapeLimits): void {
  const bad = (what: string, value: number, min: number, max: number, unit: string): void => {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new UserError(`${what} ${value}${unit} is outside what this server allows (${min}${unit} to ${max}${unit})`);
    }
  };
  bad('memory', shape.memoryMiB, 64, limits.maxMemoryMiB, ' MiB');
  bad('cpus', shape.cpus, 1, limits.maxCpus, '');
  bad('disk size', shape.diskMiB, 16, limits.maxDiskSizeMiB, ' MiB');
}

/** Whether a VM of `shape` and `image` can start as a clone of the image's template, which has the server's default shape. */
export function matchesDefaults(shape: VmShape, limits: ShapeLimits, image: GuestImage): boolean {
  return shape.memoryMiB === limits.memoryMiB && shape.cpus === limits.cpus && shape.diskMiB === effectiveDiskMiB(image, limits.diskSizeMiB);
}

/**
 * The virtual size of a VM's copy-on-write disk over a root filesystem
 * image: the VM's disk size, but never less than the image's filesystem
 * (the guest grows the filesystem to the disk; it cannot shrink it).
 */
export function overlayBytes(fsBytes: number, diskMiB: number): number {
  return Math.max(fsBytes, diskMiB * 1024 * 1024);
}
