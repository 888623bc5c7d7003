// The task views moved to the domain (apps/domain/task/task.presenter.ts): the worker renders the
// same shapes in outbound callbacks. Kept here so the API's imports read as before.
export * from "../../domain/task/task.presenter.ts";
