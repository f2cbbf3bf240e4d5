/** The eraser tool: the brush, clearing pixels instead of setting them. */
export { paintStroke } from "./brush";
export const ERASER_VALUE = 0 as const;
