# Lesson, pid and ppid: the identifiers of a child and of its parent.
# Shows: the child's parent_process().pid is the pid that started it.
import os

from procesos import Process, parent_process


def info(titulo):
    print(titulo)
    print('module name', __name__)
    print('parent process', os.getppid())  # Proceso que lo ejecuta
    print('process id:', os.getpid())  # El propio proceso
    parent = parent_process()
    if parent is not None:
        print('started by', parent.pid)


def f(nombre):
    info('function f')
    print('hello', nombre)
    print('-----')


info('Primera linea')
p = Process(target=f, args=('oscar',))
p.start()
p.join()
