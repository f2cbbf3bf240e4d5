/** The logged-in session (token and user) kept in localStorage, shared by the pages. */
import { ApiClient } from "./api/client";
import type { User } from "./api/types";

const TOKEN_KEY = "maskloop.token";
const USER_KEY = "maskloop.user";

export const api = new ApiClient("/api/v1", localStorage.getItem(TOKEN_KEY));

export function currentUser(): User | null {
  const raw = localStorage.getItem(USER_KEY);
  if (!raw || !api.token) return null;
  try { return JSON.parse(raw) as User; } catch { return null; }
}

export function saveSession(token: string, user: User): void {
  api.token = token;
  localStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem(USER_KEY, JSON.stringify(user));
}

/** Forget the login; the annotation outbox is deliberately kept. */
export function clearSession(): void {
  api.token = null;
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(USER_KEY);
}
