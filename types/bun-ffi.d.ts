// Only what shared/libc.ts uses, so tsc stays clean without @types/bun.
declare module 'bun:ffi' {
  export type FFITypeName =
    | 'void' | 'bool' | 'i8' | 'u8' | 'i16' | 'u16' | 'i32' | 'u32' | 'int'
    | 'i64' | 'u64' | 'i64_fast' | 'u64_fast' | 'f32' | 'f64' | 'ptr' | 'cstring' | 'usize';
  export interface FFIFunction {
    readonly args?: readonly FFITypeName[];
    readonly returns?: FFITypeName;
  }
  export type Pointer = number;
  export interface Library<Fns extends Record<string, FFIFunction>> {
    symbols: { [K in keyof Fns]: (...args: unknown[]) => unknown };
    close(): void;
  }
  export function dlopen<Fns extends Record<string, FFIFunction>>(name: string, symbols: Fns): Library<Fns>;
  export function ptr(view: ArrayBufferView | ArrayBufferLike, byteOffset?: number): Pointer;
  export function toArrayBuffer(ptr: Pointer, byteOffset?: number, byteLength?: number): ArrayBuffer;
  export const read: {
    u8(ptr: Pointer, byteOffset?: number): number;
    i8(ptr: Pointer, byteOffset?: number): number;
    u16(ptr: Pointer, byteOffset?: number): number;
    i16(ptr: Pointer, byteOffset?: number): number;
    u32(ptr: Pointer, byteOffset?: number): number;
    i32(ptr: Pointer, byteOffset?: number): number;
    ptr(ptr: Pointer, byteOffset?: number): number;
  };
}
